"""What managers and users do: one module per area, each workflow owning its
transaction (the change, its history entry, the revision bump and the mail
commit together or not at all; see records.py). Rights are checked against the
database in that same transaction (access.authorize)."""
