pytest_plugins = ["tickerhub_testkit.pytest_plugin"]
