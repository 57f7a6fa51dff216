"""Lightning callbacks that belong to convlens (the generic ones come from Lightning itself)."""
