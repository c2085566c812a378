"""Running the workspace's tests in the target and reporting their results.

``runner`` starts pytest in the target with the plugin in ``pytest_plugin`` (copied there,
so it must stay one stdlib-and-pytest file); ``report`` turns the plugin's events into
results and diagnostics; ``junit`` writes them as a JUnit XML report.
"""
