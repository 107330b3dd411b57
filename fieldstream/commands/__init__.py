"""fieldstream's own commands, added to the Faust app's command line."""
