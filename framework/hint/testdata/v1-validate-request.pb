

broken

min_gpa€@

mode
slow