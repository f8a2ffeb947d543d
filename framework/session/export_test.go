package session

// HclogFor is hclogFor, for the tests of the plugin log adapter.
var HclogFor = hclogFor
