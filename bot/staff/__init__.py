"""The human half: staff accounts, paging, the outbound dispatcher and dashboard actions."""
