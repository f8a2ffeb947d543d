// Package plugintest holds the test helpers both plugin kinds' tests
// share (framework/hint, framework/transport and the plugins built on
// them): wire compatibility checks against golden files.
package plugintest
