"""The ``export-image`` Pulumi provider plugin: ImageExport for every Pulumi language.

A second thin front door beside the Python dynamic resource (``provider.py``):
the same spec, lifecycle, AWS gateway and waiter, served as
``export-image:index:ImageExport`` by a provider plugin with a schema, so that
YAML, Go, TypeScript or C# programs can use it. ``schema.py`` describes the
package, ``values.py`` translates Pulumi's property values and names,
``provider.py`` maps each request onto :class:`ImageExportProvider`,
``imports.py`` reads a task for ``pulumi import`` and ``server.py`` serves it
(``pulumi-resource-export-image``).
"""
