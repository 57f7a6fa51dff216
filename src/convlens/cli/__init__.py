"""What every entry point shares: Hydra start-up and the project root, config resolvers and checks, threads,
the console progress bar and the one-line error printer."""
