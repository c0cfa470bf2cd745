module example.com/efwdemo

go 1.22
