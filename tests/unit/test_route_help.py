"""`hub route --help` says what a caller must know beyond the Newcomer's fields: the optional
integration_start and the rules' validity start."""

from click.testing import CliRunner

from hub.commands.routing import route_command


def test_route_help_names_the_optional_integration_start_and_the_rules_validity_start():
    out = CliRunner().invoke(route_command, ["--help"]).output
    flat = " ".join(out.split())
    assert "integration_start (YYYY-MM-DD, optional)" in flat and "first residence permit" in flat
    assert "validity start (valid_from in the rules file, 2025-01-01 in the packaged one)" in flat
