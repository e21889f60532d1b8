"""detector-spheres: runs DetecTor's Tor "spheres", one tor client per continent.

Modules, one concept each:
  continents  the default five spheres: which countries each one exits from
  config      the INI configuration: parsing and validation (pure, no I/O
              beyond reading the file)
  sphere      one sphere's tor process: torrc, launch, controller queries, stop
  hygiene     circuit hygiene: closes circuits whose isolated streams ended
  progress    the bootstrap display (live on a terminal, plain lines otherwise)
  cli         the command line: start, stop, status, newnym, wait, tend, list
"""
