"""The quality gate: Great Expectations suites from expectations/*.yml, run through SQL."""
