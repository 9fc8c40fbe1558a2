module scaledapi.local/airgap/kindnetd

go 1.22.0

require (
	k8s.io/api v0.33.13
	k8s.io/apimachinery v0.33.13
	k8s.io/client-go v0.33.13
)
