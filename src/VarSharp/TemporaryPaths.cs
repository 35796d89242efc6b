using System.Collections.Concurrent;

namespace VarSharp;

/// <summary>
/// The temporary files and folders being written right now (an atomic write's sibling, a bundle's folder before its
/// rename). A process ended by a signal cannot run the writers' own clean-up, so its signal handler calls
/// <see cref="DeleteAll"/> first: an interrupted import of a multi-GB checkpoint then leaves no hidden half-written copy.
/// </summary>
public static class TemporaryPaths
{
    private static readonly ConcurrentDictionary<string, byte> Pending = new(StringComparer.Ordinal);

    // The renames that publish a write and the deletion of everything pending never interleave: a signal handler
    // deleting a temporary folder while it is being exchanged with the finished output would damage both.
    private static readonly object PublishGate = new();
    private static bool ending;

    /// <summary>Records <paramref name="path"/> until the returned value is disposed (after the rename or the clean-up).</summary>
    public static Registration Track(string path)
    {
        Pending[path] = 0;
        return new Registration(path);
    }

    /// <summary>What is being written now.</summary>
    public static IReadOnlyCollection<string> Current => [.. Pending.Keys];

    /// <summary>
    /// Deletes every path still being written (or only those under <paramref name="under"/>), quietly: the process is
    /// about to end anyway.
    /// </summary>
    public static void DeleteAll(string? under = null)
    {
        var prefix = under is null ? null : Path.TrimEndingDirectorySeparator(Path.GetFullPath(under)) + Path.DirectorySeparatorChar;
        lock (PublishGate)
        {
            // The whole process is ending: no write may publish after this (tests clear only their own folder).
            if (prefix is null) ending = true;
            DeletePending(prefix);
        }
    }

    private static void DeletePending(string? prefix)
    {
        foreach (var path in Pending.Keys)
        {
            if (prefix is not null && !path.StartsWith(prefix, StringComparison.Ordinal)) continue;
            try
            {
                if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
                else File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
            Pending.TryRemove(path, out _);
        }
    }

    public readonly struct Registration(string path) : IDisposable
    {
        /// <summary>
        /// Runs <paramref name="publish"/> (the rename, or the exchange, that puts the finished write in place) so that
        /// <see cref="DeleteAll"/> runs before it or after it, never during; after a process-wide DeleteAll it refuses.
        /// </summary>
        public void Publish(Action publish)
        {
            lock (PublishGate)
            {
                if (ending) throw new OperationCanceledException("The process is ending on a signal; the write was not published.");
                publish();
                Pending.TryRemove(path, out _);
            }
        }

        public void Dispose() => Pending.TryRemove(path, out _);
    }
}
