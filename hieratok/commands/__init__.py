"""One module per `hieratok` subcommand: `add_arguments(parser)` and `run(args) -> int`."""
