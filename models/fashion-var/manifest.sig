{
  "format": "varsharp-signature",
  "format_version": 1,
  "algorithm": "ecdsa-p256-sha256",
  "key_id": "addeaf25aceeefa4",
  "manifest_sha256": "ce094524de914c7a8514fd4b9726e5c5a8ad45ed2feb07169d70d4910090d82d",
  "signature": "FgxQZFSVS29Z0osqvkrEB3OovDiW6JK1dxSVDB/r8bMTBKloU7Oh9bEWg+USuSspJkJcXuawhrA2HLXOhhcVEQ=="
}
