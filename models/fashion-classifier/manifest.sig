{
  "format": "varsharp-signature",
  "format_version": 1,
  "algorithm": "ecdsa-p256-sha256",
  "key_id": "addeaf25aceeefa4",
  "manifest_sha256": "e9210be60f4cf06cc2202abdd9bcfcd7f2aeea7e5b9e5a8ebd261de55d9ae697",
  "signature": "0RXmEVDGsw5fhILfaXRG+p6Xwpcjv+nGOCnVtRglIsisAdJbjtFW5MKgCmM/pFy1YvqiT4iq/xcx7GNkOgR2iw=="
}
