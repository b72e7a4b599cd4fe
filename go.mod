module github.com/ferry-migrate/ferry

go 1.26.8
