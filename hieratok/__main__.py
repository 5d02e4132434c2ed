from hieratok.cli import entry

entry()
