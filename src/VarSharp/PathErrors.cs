namespace VarSharp;

/// <summary>
/// One-sentence errors for paths that are missing or of the wrong kind, so a file given where a folder is expected (or
/// the reverse) is named for what it is instead of being reported as absent.
/// </summary>
public static class PathErrors
{
    /// <summary>The error for a folder that <see cref="Directory.Exists"/> did not find.</summary>
    public static VarSharpException FolderMissing(string path, string what) => new(
        path.Length == 0 ? $"{what} is an empty path; name a folder."
        : File.Exists(path) ? $"{what} {path} is a file, not a folder."
        : $"{what} {path} does not exist.");

    /// <summary>The error for a file that <see cref="File.Exists"/> did not find.</summary>
    public static VarSharpException FileMissing(string path, string what) => new(
        path.Length == 0 ? $"{what} is an empty path; name a file."
        : Directory.Exists(path) ? $"{what} {path} is a folder, not a file."
        : $"{what} {path} does not exist.");

    /// <summary>The nearest folder above <paramref name="fullPath"/> that is in fact a file (so nothing can be created below it), or null.</summary>
    public static string? FileAncestor(string fullPath)
    {
        for (var up = Path.GetDirectoryName(fullPath); !string.IsNullOrEmpty(up); up = Path.GetDirectoryName(up))
            if (File.Exists(up)) return up;
        return null;
    }

    /// <summary>
    /// Refuses outputs under /dev, /proc and /sys: replacing a file there atomically would put a regular file in place
    /// of a device or a kernel interface.
    /// </summary>
    public static void CheckOutput(string fullPath)
    {
        var probe = fullPath.EndsWith('/') ? fullPath : fullPath + "/";
        foreach (var system in new[] { "/dev/", "/proc/", "/sys/" })
            if (probe.StartsWith(system, StringComparison.Ordinal))
                throw new VarSharpException($"{fullPath} is under {system.TrimEnd('/')}, where devices and kernel files live; write outputs elsewhere.");
    }
}
