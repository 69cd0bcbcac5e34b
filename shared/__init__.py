"""Scorehook's plain-Python core: no ``azure.functions``, no ``devhost``; every external system behind a port."""
