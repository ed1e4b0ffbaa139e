"""The deployment guide's verification tools: inference CLI, accuracy/parity and performance evaluation."""
