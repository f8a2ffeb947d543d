source { control = }
destination {
