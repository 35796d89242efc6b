using VarSharp.Data;

namespace VarSharp;

/// <summary>
/// Writes a file so that readers see the old content or the new, never a mix: a temporary sibling is written, flushed
/// to disk and renamed over the target. Images, logs, run configs and JSON reports go through here (bundles and
/// checkpoints are made atomic a folder at a time), so they share the same checks — no folder in the file's place,
/// nothing under /dev, /proc or /sys — and one-sentence errors.
/// </summary>
public static class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="bytes"/> to <paramref name="path"/>, creating missing folders. <paramref name="tempDir"/>
    /// puts the temporary file elsewhere on the same file system (a bundle's parent: a temporary file inside a bundle
    /// would be an extra file its manifest does not list, should the process die before the rename).
    /// </summary>
    public static void Write(string path, byte[] bytes, string? tempDir = null) => Write(path, stream => stream.Write(bytes), tempDir);

    /// <summary>Writes what <paramref name="write"/> puts into the (seekable) stream to <paramref name="path"/>, creating missing folders.</summary>
    public static void Write(string path, Action<FileStream> write, string? tempDir = null)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new VarSharpException("The output is an empty path; name a file to write.");
        var full = Path.GetFullPath(path);
        PathErrors.CheckOutput(full);
        if (Directory.Exists(full)) throw new VarSharpException($"{full} is a folder; give the name of the file to write.");
        var dir = Path.GetDirectoryName(full)!;
        if (PathErrors.FileAncestor(full) is { } blocker) throw new VarSharpException($"Cannot write {full}: {blocker} is a file, not a folder.");
        var tmp = Path.Combine(tempDir ?? dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        using var tracked = TemporaryPaths.Track(tmp);
        try
        {
            Directory.CreateDirectory(dir);
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            tracked.Publish(() => File.Move(tmp, full, overwrite: true));
        }
        catch (Exception e) when (e is not (IOException or UnauthorizedAccessException))
        {
            TryDelete(tmp);
            throw;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            string reason = e switch
            {
                UnauthorizedAccessException => "permission denied",
                FileNotFoundException or DirectoryNotFoundException => $"its folder {dir} does not accept new files",
                _ => ImageIO.Reason(e).Replace(tmp, full, StringComparison.Ordinal),
            };
            throw new VarSharpException($"Cannot write {full}: {reason}.", e);
        }
    }

    private static void TryDelete(string tmp)
    {
        try { File.Delete(tmp); }
        catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
    }
}
