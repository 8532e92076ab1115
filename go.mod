module pamtotp

go 1.26.8

require (
	github.com/mdp/qrterminal/v3 v3.2.1
	github.com/msteinert/pam/v2 v2.1.0
	github.com/pquerna/otp v1.5.0
	golang.org/x/crypto v0.58.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/boombuler/barcode v1.0.1-0.20190219062509-6c824513bacc // indirect
	golang.org/x/term v0.47.0 // indirect
	rsc.io/qr v0.2.0 // indirect
)
