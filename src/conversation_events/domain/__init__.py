"""Pure domain rules: log normalisation, conversation analysis, scoring and friendship.

Nothing in this package does I/O or reads the clock or settings (an import-linter contract
in pyproject.toml keeps persistence, messaging and settings out); callers pass in "now",
the timezone and the weights. The submodules are the public interface: `conversation`,
`text`, `questions`, `emotions`, `scoring` and `friendship`.
"""
