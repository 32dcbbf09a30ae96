"""``labctl eval``: run an evaluator on data collected elsewhere (placeholder)."""

import click


@click.group("eval")
def eval_group() -> None:
    """Score data collected elsewhere with the lab's evaluators."""
