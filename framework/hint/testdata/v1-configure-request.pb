

chunk€€@

method
seek


scan
vm0Ò	€€@€€€€€à