SQL = "select 1"
