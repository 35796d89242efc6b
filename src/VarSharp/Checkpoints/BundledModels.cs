namespace VarSharp.Checkpoints;

/// <summary>
/// The models that ship in the repository's <c>models/</c> folder, found from the working directory or from the app's
/// own folder, so that a CLI started from anywhere inside (or outside) a checkout finds them without a path.
/// </summary>
public static class BundledModels
{
    /// <summary>The Fashion-MNIST generator (tokenizer + transformer).</summary>
    public const string Generator = "models/fashion-var";

    /// <summary>The Fashion-MNIST classifier that judges generated images and reconstructions.</summary>
    public const string Classifier = "models/fashion-classifier";

    /// <summary>
    /// <paramref name="relativePath"/> under the working directory if it exists there, else under the nearest parent of
    /// the app's folder that has it (a build output inside the repository); null when neither has it.
    /// </summary>
    public static string? Find(string relativePath)
    {
        var here = Path.GetFullPath(relativePath);
        if (Directory.Exists(here)) return here;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relativePath);
            if (Directory.Exists(candidate)) return candidate;
        }
        return null;
    }
}
