"""The DVV adapter: population-register change data (VTJ-muutosrajapinta) into PopulationChange events."""
