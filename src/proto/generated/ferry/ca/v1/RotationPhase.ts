// Original file: proto/ferry/ca/v1/ca.proto

export const RotationPhase = {
  ROTATION_PHASE_UNSPECIFIED: 'ROTATION_PHASE_UNSPECIFIED',
  /**
   * One root; its authority signs.
   */
  ROTATION_PHASE_STEADY: 'ROTATION_PHASE_STEADY',
  /**
   * A new root is trusted beside the old one, which still signs.
   */
  ROTATION_PHASE_ROTATING: 'ROTATION_PHASE_ROTATING',
  /**
   * The new authority signs; both roots are trusted until the rotation finishes.
   */
  ROTATION_PHASE_SWITCHED: 'ROTATION_PHASE_SWITCHED',
} as const;

export type RotationPhase =
  | 'ROTATION_PHASE_UNSPECIFIED'
  | 0
  /**
   * One root; its authority signs.
   */
  | 'ROTATION_PHASE_STEADY'
  | 1
  /**
   * A new root is trusted beside the old one, which still signs.
   */
  | 'ROTATION_PHASE_ROTATING'
  | 2
  /**
   * The new authority signs; both roots are trusted until the rotation finishes.
   */
  | 'ROTATION_PHASE_SWITCHED'
  | 3

export type RotationPhase__Output = typeof RotationPhase[keyof typeof RotationPhase]
