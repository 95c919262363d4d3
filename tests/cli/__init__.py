"""Tests of the agents-persist command line (run as real subprocesses, or through ``main(argv)``)."""
