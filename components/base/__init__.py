"""Pure helpers every domain may use (layer 0): renewal windows that the program decides itself
(so renewal happens under a plain `pulumi up`, which never refreshes), and filling the template
files (scripts, units, configs) that sit beside the components. No Pulumi resources here, and
no import from other packages of `components`.
"""
