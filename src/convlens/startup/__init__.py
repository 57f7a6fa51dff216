"""What every entry point shares before its task runs: the project root and one-line errors, Ctrl-C during
start-up, config resolvers and checks, threads, and the run log."""
