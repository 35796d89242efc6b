{
  "format": "varsharp-signature",
  "format_version": 1,
  "algorithm": "ecdsa-p256-sha256",
  "key_id": "addeaf25aceeefa4",
  "manifest_sha256": "6dd94e6953fe8641e8b760768d4166940b648370d51a8be3dbf4d4833491aab1",
  "signature": "W+dNaR0/qxcf5IqLXuXTYSUEQz4YHu82TLewkocLXi5SmhppVICYmuoCImwUhJV4jn/dACUMKjYpi1TeWrv3pQ=="
}
