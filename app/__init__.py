"""The example application that ships with dbtasks: a small task tracker."""
