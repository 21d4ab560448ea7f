"""The ssd-large MLPerf ruleset (closed/open YAML), its checker script and the multi-run summarizer."""
