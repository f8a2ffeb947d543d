

listen*where

streams"όÿÿÿÿÿÿÿÿ

tls"

timeout"€”λά

window"
1GiB