"""Stream processing: the faust app, its topics, and thin agents that call the domain core."""
