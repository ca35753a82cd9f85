module example.com/myfilter

go 1.26.0

require github.com/varwatch/varwatch v0.0.0-00010101000000-000000000000

// The plugin SDK (github.com/varwatch/varwatch/plugins/sdk) is built from
// a varwatch checkout, not downloaded. Here: the checkout this template
// sits in. Copied elsewhere, point it at yours (plugins/README.md):
//
//	go mod edit -replace github.com/varwatch/varwatch=/path/to/varwatch
replace github.com/varwatch/varwatch => ../..
