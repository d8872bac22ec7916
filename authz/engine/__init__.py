"""The decision engine: the Casbin model and the policy files (policy.py), the
in-memory index of facts kept fresh by the policy revision (index.py), the
Decider that answers a Question with a Decision (decisions.py), and what asks
it: checks, permissions, and AuthZEN evaluations and searches on plain values.

Nothing here changes rights (only the space catalogue is copied from
policies/spaces.yaml at start-up), and nothing here knows JSON or HTTP."""
