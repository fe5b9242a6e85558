"""TickerHub fan-out benchmark: load generator, naive baseline, scenarios A-E."""
