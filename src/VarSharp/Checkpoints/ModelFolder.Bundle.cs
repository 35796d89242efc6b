namespace VarSharp.Checkpoints;

public static partial class ModelFolder
{
    /// <summary>
    /// When the folder is a bundle (it has manifest.json, as `varsharp import` writes), verifies every file against the
    /// manifest and throws <see cref="ModelBundleException"/> on a missing, extra, resized or altered file. A plain model
    /// folder (no manifest) passes unchecked, unless <paramref name="trust"/> is given: then only a bundle whose manifest
    /// one of its keys signed passes (<see cref="BundleSignature"/>). Every folder-based loader calls this first.
    /// </summary>
    public static void VerifyIfBundle(string dir, BundleTrust? trust = null)
    {
        if (trust is not null) BundleSignature.Verify(dir, trust);
        else if (ModelBundle.IsBundle(dir)) ModelBundle.Verify(dir);
    }
}
