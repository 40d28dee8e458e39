"""Wires the emulator's pytest plugin for this repository.

The plugin is also registered as a pytest11 entry point once the package is
installed; naming it here keeps a plain checkout working too.
"""
