using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Config;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>What is wrong with a model bundle, so callers and tests can tell failures apart without parsing messages.</summary>
public enum ModelBundleProblem
{
    /// <summary>The folder has no manifest.json.</summary>
    ManifestMissing,
    /// <summary>manifest.json is not the JSON this version writes.</summary>
    ManifestInvalid,
    /// <summary>A file the manifest lists is absent.</summary>
    MissingFile,
    /// <summary>The folder holds a file or folder the manifest does not list.</summary>
    ExtraFile,
    /// <summary>A file's length differs from the manifest's.</summary>
    SizeMismatch,
    /// <summary>A file's SHA-256 differs from the manifest's.</summary>
    DigestMismatch,
    /// <summary>The output folder exists and may not be replaced.</summary>
    OutputExists,
    /// <summary>A signed bundle was required but the folder has no manifest.sig.</summary>
    SignatureMissing,
    /// <summary>manifest.sig is malformed or does not match the manifest.</summary>
    SignatureInvalid,
    /// <summary>The bundle is signed by a key the caller does not trust.</summary>
    UntrustedKey,
    /// <summary>A listed file is a symbolic link or empty (what a device or pipe looks like), so it is not read.</summary>
    NotAPlainFile,
}

/// <summary>A model bundle failed verification or could not be written; the message is one sentence.</summary>
public sealed class ModelBundleException(ModelBundleProblem problem, string message) : VarSharpException(message)
{
    public ModelBundleProblem Problem { get; } = problem;
}

/// <summary>One input file a bundle was made from, recorded in the manifest for provenance (not verified on load).</summary>
public sealed record BundleSource(string Role, string FileName, string Sha256, long Bytes);

/// <summary>A verified manifest: every bundle file with its SHA-256 and length.</summary>
public sealed record BundleManifest(int FormatVersion, IReadOnlyDictionary<string, (string Sha256, long Bytes)> Files);

/// <summary>
/// A VarSharp model bundle: a model folder (config.json + model.safetensors holding `vae.*`/`var.*`) plus manifest.json,
/// which records the SHA-256 and length of every other file. Bundles are written atomically (into a temporary sibling
/// folder, flushed to disk, then renamed into place) and verified before use: a missing, extra, resized or altered file
/// is refused.
/// </summary>
public static partial class ModelBundle
{
    public const string ManifestFileName = "manifest.json";
    public const string ConfigFileName = "config.json";
    public const string WeightsFileName = "model.safetensors";
    public const string FormatName = "varsharp-bundle";
    public const int FormatVersion = 1;

    /// <summary>A manifest is a few hundred bytes; anything this large is not one.</summary>
    private const long MaxManifestBytes = 1 << 20;

    /// <summary>
    /// The nearest folder at or above <paramref name="dir"/> (symbolic links resolved) that is a VarSharp bundle, or
    /// null. Only a manifest of our format counts: other projects' manifest.json files above a run folder do not.
    /// </summary>
    public static string? EnclosingBundle(string? dir)
    {
        for (var up = dir is null ? null : Resolved(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))); !string.IsNullOrEmpty(up); up = Path.GetDirectoryName(up))
            if (IsOurBundle(up)) return up;
        return null;
    }

    private static bool IsOurBundle(string dir)
    {
        var path = Path.Combine(dir, ManifestFileName);
        try
        {
            if (!File.Exists(path) || new FileInfo(path).Length > MaxManifestBytes) return false;
            using var doc = JsonConfig.ParseUntrusted(File.ReadAllBytes(path));
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("format", out var format) && format.ValueKind == JsonValueKind.String && format.GetString() == FormatName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return false;
        }
    }

    /// <summary>
    /// Refuses a folder for plain outputs (sample images, an export, a token cache) that is a bundle or lies inside one:
    /// any file written there would make the bundle fail verification.
    /// </summary>
    public static void CheckOutsideBundles(string dir, string what)
    {
        if (EnclosingBundle(dir) is { } bundle)
            throw new VarSharpException($"{what} {Path.GetFullPath(dir)} is inside the bundle {bundle}, whose manifest lists every file it may hold; write elsewhere.");
    }

    // The path with symbolic links of its existing part resolved, so that a link cannot hide a bundle above it.
    private static string Resolved(string full)
    {
        var existing = full;
        while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is { } parent) existing = parent;
        try
        {
            var real = new DirectoryInfo(existing).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? existing;
            return real + full[existing.Length..];
        }
        catch (IOException)
        {
            return full;
        }
    }

    /// <summary>True when <paramref name="dir"/> has a manifest.json, i.e. claims to be a bundle.</summary>
    public static bool IsBundle(string dir) => File.Exists(Path.Combine(dir, ManifestFileName));

    /// <summary>
    /// Writes a bundle at <paramref name="dir"/>. An existing empty folder is replaced; an existing non-empty one only
    /// with <paramref name="force"/>, and only if it is itself a bundle (so a mistyped path never wipes unrelated files).
    /// </summary>
    /// <param name="beforeSwap">Runs on the finished temporary folder before it takes the bundle's place (signing it,
    /// so that a signed bundle is never replaced by an unsigned one, even for a moment).</param>
    public static void Write(string dir, string configJson, IEnumerable<KeyValuePair<string, Tensor>> tensors, bool force = false,
        IReadOnlyList<BundleSource>? sources = null, string producer = "varsharp", Action<string>? beforeSwap = null)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        CheckOutput(full, force);
        var parent = Path.GetDirectoryName(full) ?? throw new VarSharpException($"Cannot write a bundle at the file-system root {full}.");
        Directory.CreateDirectory(parent);
        var name = Path.GetFileName(full);
        var temp = Path.Combine(parent, $".{name}.tmp-{Guid.NewGuid():N}");
        using var tracked = TemporaryPaths.Track(temp);
        Directory.CreateDirectory(temp);
        try
        {
            WriteDurably(Path.Combine(temp, ConfigFileName), Encoding.UTF8.GetBytes(configJson));
            SafeTensors.Save(Path.Combine(temp, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt", ["producer"] = producer });
            var manifest = BuildManifest(temp, [ConfigFileName, WeightsFileName], sources);
            WriteDurably(Path.Combine(temp, ManifestFileName), Encoding.UTF8.GetBytes(manifest));
            beforeSwap?.Invoke(temp);
            SyncDirectory(temp);
            tracked.Publish(() => Swap(temp, full, parent, force));
        }
        catch
        {
            DeleteQuietly(temp);
            throw;
        }
    }

    /// <summary>
    /// Refuses an output folder that exists and may not be replaced, or that lies inside another bundle (whose manifest
    /// it would break) or is a training checkpoint's model (whose train state it would no longer match); call it before
    /// expensive work.
    /// </summary>
    public static void CheckOutput(string dir, bool force)
    {
        dir = Path.TrimEndingDirectorySeparator(dir);
        if (File.Exists(dir))
            throw new ModelBundleException(ModelBundleProblem.OutputExists, $"Output {dir} is an existing file, not a folder; choose another path.");
        PathErrors.CheckOutput(dir);
        if (EnclosingBundle(Path.GetDirectoryName(dir)) is { } outer)
            throw new ModelBundleException(ModelBundleProblem.OutputExists,
                $"Output {dir} lies inside the bundle {outer}, whose manifest would no longer match; choose a path outside it.");
        if (Path.GetDirectoryName(dir) is { } up && File.Exists(Path.Combine(up, "train_state.safetensors")))
            throw new ModelBundleException(ModelBundleProblem.OutputExists,
                $"Output {dir} is the model of the training checkpoint {up}, whose train state it would no longer match; choose another path.");
        if (PathErrors.FileAncestor(dir) is { } blocker)
            throw new ModelBundleException(ModelBundleProblem.OutputExists, $"Output {dir} lies under {blocker}, which is a file, not a folder; choose another path.");
        CheckReplaceable(dir, force);
    }

    // The rules for an existing folder at the output path: empty, or a bundle that --force may replace.
    private static void CheckReplaceable(string dir, bool force)
    {
        if (!Directory.Exists(dir) || !Directory.EnumerateFileSystemEntries(dir).Any()) return;
        if (!force)
            throw new ModelBundleException(ModelBundleProblem.OutputExists, $"Output folder {dir} already exists and is not empty; pass --force to replace it.");
        if (!IsBundle(dir))
            throw new ModelBundleException(ModelBundleProblem.OutputExists,
                $"Output folder {dir} is not empty and holds no {ManifestFileName}, so --force will not replace it (only an earlier bundle is replaced).");
    }

    /// <summary>Checks manifest.json against the folder: every listed file present with its length and SHA-256, nothing else.</summary>
    public static BundleManifest Verify(string dir) => Verify(dir, check: null);

    /// <summary>
    /// <see cref="Verify(string)"/>, with <paramref name="check"/> run on the manifest's bytes before they are parsed:
    /// a signature check then covers exactly the manifest that the files are checked against. Files named in
    /// <paramref name="deferred"/> are checked for presence and length only: the caller hashes them as it reads them
    /// and compares with <see cref="CheckDigest"/>, so what it uses is what was verified.
    /// </summary>
    internal static BundleManifest Verify(string dir, Action<byte[]>? check, IReadOnlySet<string>? deferred = null)
    {
        if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Model bundle");
        var manifestPath = Path.Combine(dir, ManifestFileName);
        if (!File.Exists(manifestPath))
            throw new ModelBundleException(ModelBundleProblem.ManifestMissing, $"Model bundle {dir} has no {ManifestFileName}, so its files cannot be verified.");
        var manifest = ReadManifest(manifestPath, check);

        foreach (var entry in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(entry);
            if (name == ManifestFileName) continue;
            // The signature covers the manifest, not vice versa; but only a plain file may carry that name.
            if (name == BundleSignature.FileName && File.Exists(entry) && new FileInfo(entry).LinkTarget is null) continue;
            if (!manifest.Files.ContainsKey(name) || Directory.Exists(entry))
                throw new ModelBundleException(ModelBundleProblem.ExtraFile,
                    $"Model bundle {dir} holds '{name}', which its manifest does not list, so the folder was modified after it was written.");
        }
        foreach (var (name, (_, bytes)) in manifest.Files)
        {
            var path = Path.Combine(dir, name);
            if (!File.Exists(path))
                throw new ModelBundleException(ModelBundleProblem.MissingFile, $"Model bundle {dir} lacks '{name}', which its manifest lists.");
            // Hashing a link to /dev/zero, or a pipe (length 0 like an empty file), would never end.
            var info = new FileInfo(path);
            if (info.LinkTarget is not null || info.Length == 0)
                throw new ModelBundleException(ModelBundleProblem.NotAPlainFile,
                    $"Model bundle file {path} is {(info.LinkTarget is null ? "empty (or a device or pipe)" : "a symbolic link")}, not a plain file with content, so it is not read.");
            long actual = info.Length;
            if (actual != bytes)
                throw new ModelBundleException(ModelBundleProblem.SizeMismatch,
                    $"Model bundle file {path} has {actual} bytes but the manifest says {bytes}, so it was truncated or altered.");
        }
        foreach (var name in manifest.Files.Keys)
        {
            if (deferred?.Contains(name) == true) continue;
            var path = Path.Combine(dir, name);
            CheckDigest(manifest, dir, name, FileDigest.Sha256(path), new FileInfo(path).Length);
        }
        return manifest;
    }

    /// <summary>Throws the bundle's size or digest error unless file <paramref name="name"/> had these bytes as read.</summary>
    internal static void CheckDigest(BundleManifest manifest, string dir, string name, string sha256, long bytes)
    {
        var path = Path.Combine(dir, name);
        if (!manifest.Files.TryGetValue(name, out var expected))
            throw new ModelBundleException(ModelBundleProblem.ExtraFile,
                $"Model bundle {dir} holds '{name}', which its manifest does not list, so the folder was modified after it was written.");
        if (bytes != expected.Bytes)
            throw new ModelBundleException(ModelBundleProblem.SizeMismatch,
                $"Model bundle file {path} has {bytes} bytes but the manifest says {expected.Bytes}, so it was truncated or altered.");
        if (sha256 != expected.Sha256)
            throw new ModelBundleException(ModelBundleProblem.DigestMismatch,
                $"Model bundle file {path} has SHA-256 {sha256} but the manifest says {expected.Sha256}, so it is corrupt or was altered.");
    }

    private static string BuildManifest(string dir, string[] files, IReadOnlyList<BundleSource>? sources)
    {
        var fileNodes = new JsonObject();
        foreach (var f in files)
        {
            var path = Path.Combine(dir, f);
            fileNodes[f] = new JsonObject { ["sha256"] = FileDigest.Sha256(path), ["bytes"] = new FileInfo(path).Length };
        }
        var root = new JsonObject
        {
            ["format"] = FormatName,
            ["format_version"] = FormatVersion,
            ["files"] = fileNodes,
        };
        if (sources is { Count: > 0 })
        {
            var list = new JsonArray();
            foreach (var s in sources)
                list.Add(new JsonObject { ["role"] = s.Role, ["file"] = s.FileName, ["sha256"] = s.Sha256, ["bytes"] = s.Bytes });
            root["sources"] = list;
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>
    /// A small metadata file read whole, but only if it is a plain, non-empty file of at most <paramref name="cap"/>
    /// bytes: a symbolic link to /dev/zero or a FIFO named manifest.json would otherwise be read forever or block.
    /// </summary>
    internal static byte[] ReadSmallFile(string path, long cap, Func<string, ModelBundleException> invalid)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is not null) throw invalid("it is a symbolic link, not a plain file");
        if (!info.Exists) throw invalid("it is not a plain file");
        if (info.Length == 0) throw invalid("it is empty (or a device or pipe, not a plain file)");
        if (info.Length > cap) throw invalid($"it is larger than {cap} bytes");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var buffer = new byte[cap + 1];
        int total = 0, n;
        while (total < buffer.Length && (n = stream.Read(buffer, total, buffer.Length - total)) > 0) total += n;
        if (total > cap) throw invalid($"it is larger than {cap} bytes");
        return buffer[..total];
    }

    private static BundleManifest ReadManifest(string path, Action<byte[]>? check)
    {
        ModelBundleException Invalid(string why) =>
            new(ModelBundleProblem.ManifestInvalid, $"Manifest {path} is not a valid {FormatName} manifest: {why}.");

        var content = ReadSmallFile(path, MaxManifestBytes, Invalid);
        check?.Invoke(content);
        JsonDocument doc;
        try
        {
            doc = JsonConfig.ParseUntrusted(content);
        }
        catch (JsonException e)
        {
            throw Invalid($"it is not JSON ({e.Message})");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Invalid("the top level is not an object");
            if (!root.TryGetProperty("format", out var format) || format.ValueKind != JsonValueKind.String || format.GetString() != FormatName)
                throw Invalid($"\"format\" is not \"{FormatName}\"");
            if (!root.TryGetProperty("format_version", out var version) || version.ValueKind != JsonValueKind.Number || !version.TryGetInt32(out var v))
                throw Invalid("\"format_version\" is missing or not an integer");
            if (v != FormatVersion) throw Invalid($"format_version {v} is not the supported {FormatVersion}");
            if (!root.TryGetProperty("files", out var files) || files.ValueKind != JsonValueKind.Object)
                throw Invalid("\"files\" is missing or not an object");

            var result = new Dictionary<string, (string, long)>(StringComparer.Ordinal);
            foreach (var f in files.EnumerateObject())
            {
                var name = f.Name;
                if (name.Length == 0 || name is "." or ".." || name == ManifestFileName || name.IndexOfAny(['/', '\\', '\0']) >= 0)
                    throw Invalid($"it lists '{name}', which is not a plain file name of the bundle");
                if (f.Value.ValueKind != JsonValueKind.Object
                    || !f.Value.TryGetProperty("sha256", out var sha) || sha.ValueKind != JsonValueKind.String
                    || !f.Value.TryGetProperty("bytes", out var bytes) || bytes.ValueKind != JsonValueKind.Number
                    || !bytes.TryGetInt64(out var n) || n < 0)
                    throw Invalid($"the entry for '{name}' needs a \"sha256\" string and a non-negative \"bytes\" integer");
                var digest = sha.GetString()!;
                if (digest.Length != 64 || !digest.All(c => c is (>= '0' and <= '9') or (>= 'a' and <= 'f')))
                    throw Invalid($"the SHA-256 of '{name}' is not 64 lowercase hex digits");
                if (!result.TryAdd(name, (digest, n))) throw Invalid($"it lists '{name}' twice");
            }
            if (result.Count == 0) throw Invalid("it lists no files");
            return new BundleManifest(v, result);
        }
    }

    private static void WriteDurably(string path, byte[] bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    // Renames the finished temporary folder into place. An existing folder (empty, or an old bundle under --force) is
    // exchanged with it in one step where the system can (Linux's renameat2 RENAME_EXCHANGE), so no moment exists
    // without a bundle at the path; elsewhere it is first moved aside, so a failed rename can put it back.
    private static void Swap(string temp, string full, string parent, bool force)
    {
        string? old = null;
        if (Directory.Exists(full))
        {
            // Only the folder's own state is checked again here: where it lies was checked before the work began, and
            // an in-place rewrite (recommend on a checkpoint's model) is not a new output.
            CheckReplaceable(full, force);
            if (TryExchange(temp, full))
            {
                SyncDirectory(parent);
                DeleteQuietly(temp);   // now the old folder
                return;
            }
            old = Path.Combine(parent, $".{Path.GetFileName(full)}.old-{Guid.NewGuid():N}");
            Directory.Move(full, old);
        }
        try
        {
            Directory.Move(temp, full);
        }
        catch (Exception e) when (old is not null)
        {
            try
            {
                Directory.Move(old, full);
            }
            catch (Exception restore) when (restore is IOException or UnauthorizedAccessException)
            {
                throw new VarSharpException($"Replacing {full} failed ({e.Message.TrimEnd('.')}) and the previous bundle could not be put back; it is at {old}.", e);
            }
            throw;
        }
        SyncDirectory(parent);
        if (old is not null) DeleteQuietly(old);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "renameat2", SetLastError = true)]
    private static extern int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    // Swaps two existing paths atomically; false where the system or file system cannot, and the caller falls back.
    private static bool TryExchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux()) return false;
        const int AtFdCwd = -100;
        const uint RenameExchange = 2;
        try
        {
            return RenameAt2(AtFdCwd, a, AtFdCwd, b, RenameExchange) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    private static void DeleteQuietly(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>fsync on the folder itself makes the new names durable (POSIX); Windows has no equivalent and needs none.</summary>
    /// <summary>Flushes a folder's entries (new names, renames) to disk, where the system allows it.</summary>
    internal static void SyncDirectory(string dir)
    {
        if (OperatingSystem.IsWindows()) return;
        int fd = Posix.open(dir, 0 /* O_RDONLY */);
        if (fd < 0) return;
        try
        {
            Posix.fsync(fd);
        }
        finally
        {
            Posix.close(fd);
        }
    }

    private static class Posix
    {
        [DllImport("libc", SetLastError = true)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        public static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int fd);
    }
}
