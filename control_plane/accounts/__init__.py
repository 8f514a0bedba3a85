"""Customer accounts, their API keys, and the balance a customer sees."""
