module podhttp

go 1.19
