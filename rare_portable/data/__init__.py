"""Reading datasets and turning images into network input, the same way for every runtime."""
