"""What the test modules share: helpers they import from here, never from
each other (tests/test_layers.py checks it). Fixtures live in conftest.py
files; these modules hold the plain functions and values behind them.

- `backend`: which database the run uses, and a fresh one made from the template.
- `api`: a JSON test client that remembers its bearer token, people, structures.
- `consent`: a direct attachment that became an invitation, accepted in the
  person's name (for tests whose subject is not consent).
- `rows`: facts written with the models, for what no workflow hands out here.
- `cli`: the `authz` command line, run in-process.
- `membership`: the bakery world of the request, attachment and history tests.
- `authzen`: the AuthZEN tests' world and questions.
"""
