
)
max_gpamust be above min_gpa (0x2000)
the block as a whole