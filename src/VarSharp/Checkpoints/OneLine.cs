using System.Text;

namespace VarSharp.Checkpoints;

/// <summary>
/// Error messages quote names read from untrusted files; this keeps such a message on one printable line (control
/// characters become \uXXXX escapes, very long messages are cut), so a crafted name cannot forge extra output lines.
/// </summary>
internal static class OneLine
{
    public const int MaxLength = 2000;

    public static string Of(string message)
    {
        bool clean = message.Length <= MaxLength;
        foreach (char c in message)
            if (char.IsControl(c) || c is '\u2028' or '\u2029' || char.IsSurrogate(c)) { clean = false; break; }
        if (clean) return message;
        var sb = new StringBuilder(Math.Min(message.Length, MaxLength + 16));
        for (int i = 0; i < message.Length && sb.Length < MaxLength; i++)
        {
            char c = message[i];
            if (char.IsHighSurrogate(c) && i + 1 < message.Length && char.IsLowSurrogate(message[i + 1]))
            {
                sb.Append(c).Append(message[++i]);
                continue;
            }
            if (char.IsControl(c) || c is '\u2028' or '\u2029' || char.IsSurrogate(c)) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        if (sb.Length >= MaxLength) sb.Append("…");
        return sb.ToString();
    }
}
