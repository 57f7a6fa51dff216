"""What the entry points do that needs more than one screen: each module is one ``src/<name>.py``'s work."""
