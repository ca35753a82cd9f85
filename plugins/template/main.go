package main

import "github.com/varwatch/varwatch/plugins/sdk"

func init() {
	sdk.Register(func(u *sdk.Update, p sdk.Params) sdk.Verdict {
		if f, ok := u.NewFloat(); ok && f < 0 {
			return sdk.Drop()
		}
		return sdk.Pass()
	})
}

func main() {}
