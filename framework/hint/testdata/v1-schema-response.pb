

method"
auto*how

chunk